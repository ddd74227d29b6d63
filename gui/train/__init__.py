"""The Train area: choose a model, method and precision, check that it fits, run and watch.

``area.TrainArea`` composes the pieces; each module holds one of them:

- ``config_model``: the run config being edited, as plain values with a change signal;
- ``fields``: one editor widget per run-config key, built from ``RunConfig.field_meta()``;
- ``model_picker``, ``method_picker``, ``gpu_panel``: the "choose" widgets;
- ``vram_gauge`` and ``estimator``: the live memory estimate, computed off the UI thread;
- ``worker_thread``: the QThread client around ``engine.client.WorkerClient``;
- ``plots``, ``log_console``, ``advisor``: watching a run;
- ``background``: small jobs (environment detection, model info) off the UI thread.
"""
