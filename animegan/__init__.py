"""AnimeGAN v1/v2 in PyTorch: generators, discriminator, losses, training and inference.

Pure library: it imports no celery, redis, boto3 or fastapi (tests/test_boundaries.py holds it to that).
"""

__version__ = "0.1.0"
