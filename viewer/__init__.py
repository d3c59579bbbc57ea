"""``flux dev``: a local dashboard that tails a Flux trace file.

The pure core needs nothing outside the standard library: ``viewer.trace``
folds trace bytes into ``viewer.summary`` run summaries, ``viewer.timeline``
folds one run's events into a ``viewer.runview`` view, with ``viewer.diff``,
``viewer.axis`` and ``viewer.query`` beside them. Around it, the I/O:
``viewer.store`` (reading the file; ``viewer.bulk`` for a large first load),
``viewer.tailer``, ``viewer.hub``, ``viewer.sse``, ``viewer.pages`` and
``viewer.server``, which need the ``viewer`` extra. Entry points:
``viewer.server.run`` (blocking, used by ``flux dev``) and
``viewer.server.create_app`` (an ASGI app, for tests and embedding).
"""
