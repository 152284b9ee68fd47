"""An App that chooses its own namespace and partition count, as a user's module would.

The namespace comes from ``FLOWSLOT_TEST_APP_NAMESPACE`` so each test can use
its own; it is not one of the CLI's ``FLOWSLOT_*`` variables.
"""

from __future__ import annotations

import os

from engine import App

app = App(namespace=os.environ.get("FLOWSLOT_TEST_APP_NAMESPACE", "tapp"), partitions=16)


@app.task(name="namespaced.echo")
def echo(value: int) -> int:
    return value
