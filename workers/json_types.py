"""Names for the JSON the service stores, sends and logs, so the `Any` such data holds is explained once, here.

A decoded JSON object's values are whatever JSON holds (str, number, bool, None, list, object): their shape
belongs to the reader, and the typed reader (a kind's spec or result model, a schema) validates what it needs.
"""

from __future__ import annotations

from typing import Any

JSONValue = Any  # one decoded JSON value of any shape (see above)
JSONObject = dict[str, JSONValue]
