"""The CLI's verbs, one module per noun.

Each module registers its sub-commands on the parser (``register(verbs)``, each with
``set_defaults(run=...)``) and builds views: plain data (dataclasses, lists, dicts) that
console/cli.py prints as a table or JSON and that the dashboard can render as they are, the way
scheduler/ticks.py's ``overview()`` serves `lamplighter schedule`. A command function builds
a view and hands it to an output helper; it does not shape rows itself. Actions take the actor
as ``by=``, so the dashboard can pass its signed-in user where the CLI passes ``cli.operator()``.
"""
