"""HTTP routes, one module per resource: stylize, batches, uploads, trainings, jobs, models, health."""
