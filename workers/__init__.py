"""Celery workers and the light service layer (settings, storage, job records) shared with the API."""
