"""The Adapters area: the adapter library and the side-by-side playground.

``area.AdaptersArea`` composes the pieces:

- ``library_model``: the library cards as a ``QAbstractListModel`` and a card delegate;
- ``generation_thread``: the QThread client around ``engine.generate.GenerationClient``;
- ``prompts``: saved prompts (JSON in the data home), replayable.
"""
