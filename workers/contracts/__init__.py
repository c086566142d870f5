"""What travels between the API and the workers, one module per job kind (its typed spec, payloads, typed
result and JobKind entry) plus the registry of kinds; task payloads carry ids and storage keys, never image
bytes. Nothing here imports Celery, Redis or torch: workers.enqueue sends the messages the kinds build.
"""
