"""The reconciler's commands: ``flowslot daemon``, ``flowslot reconcile`` and ``flowslot demo``.

They live here, above ``engine``, because they run a ``Reconciler``; the
``flowslot`` group in ``engine/cli`` finds them through the
``flowslot.commands`` entry points in ``pyproject.toml`` and never imports
this package itself.
"""
