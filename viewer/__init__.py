"""``flux dev``: a local dashboard that tails a Flux trace file.

The pure parts (``viewer.trace``, ``viewer.timeline``, ``viewer.diff``,
``viewer.axis``, ``viewer.query``) need nothing outside the standard library;
``viewer.server`` needs the ``viewer`` extra. Entry points:
``viewer.server.run`` (blocking, used by ``flux dev``) and
``viewer.server.create_app`` (an ASGI app, for tests and embedding).
"""
