"""The Celery tasks: one module per job kind (its JobKind.task_module) plus webhook delivery, all thin (parse
the payload, call a plain job function of workers.jobs, record the outcome through runtime.job_outcome).

Importing this package registers every task on the app; it loads no torch (the job modules are imported inside
the tasks, in the worker child).
"""

from __future__ import annotations

import importlib

from workers.contracts.registry import TASK_MODULES

for _module in TASK_MODULES:
    importlib.import_module(_module)
