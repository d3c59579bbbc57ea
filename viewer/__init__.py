"""``flux dev``: a local dashboard that tails a Flux trace file.

The pure core needs nothing outside the standard library: ``viewer.trace``
folds trace bytes into ``viewer.summary`` run summaries, ``viewer.timeline``
(with ``viewer.waits`` for waits, sleeps, timeouts and cancellation, and
``viewer.lanes`` for the bars of each row) folds one run's events into a
``viewer.runview`` view, with ``viewer.diff``, ``viewer.axis``,
``viewer.values`` (stored values shown as Python), ``viewer.headline`` (a failed
run's headline) and ``viewer.query`` beside them. Around it, the I/O: ``viewer.store`` (reading the
file; ``viewer.bulk`` for a large first load, newest runs first),
``viewer.tailer``, ``viewer.hub``, ``viewer.sse``, ``viewer.pages`` (the runs
page; ``viewer.runpage`` the run page), ``viewer.demo`` (``flux dev --demo``) and
``viewer.server`` with ``viewer.hosts`` (which Host headers it answers) and
``viewer.connections`` (closing idle and half-sent connections), which need the
``viewer`` extra. Entry points:
``viewer.server.run`` (blocking, used by ``flux dev``) and
``viewer.server.create_app`` (an ASGI app, for tests and embedding).
"""
