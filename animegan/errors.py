"""Exceptions of the model library: one base class and one subclass per kind of bad input.

Callers (the CLI, the workers) treat every AnimeGANError as invalid input: fail the job, do not retry.
"""

from __future__ import annotations


class AnimeGANError(Exception):
    """Base class of every error the library raises for bad input, files or configuration."""


class ConfigError(AnimeGANError, ValueError):
    """A configuration value is out of range or inconsistent; the message names the field and value."""


class WeightsError(AnimeGANError):
    """A weights file is missing, unreadable or not in an accepted format; the message names the path."""


class ImageError(AnimeGANError):
    """An image cannot be decoded or is outside the accepted size/mode; the message names the input."""


class DatasetError(AnimeGANError):
    """A dataset folder is missing, empty or holds unreadable images; the message names the folder/file."""


class VideoError(AnimeGANError):
    """A video cannot be read (not a container, no video stream, damaged) or encoded; the message names it."""
