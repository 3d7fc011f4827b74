"""What a person sees: tables, JSON and errors (``console``), the live training display
(``progress``), figures (``plots``) and filmstrips of landmarks (``filmstrip``).

May import: ``errors``, ``common``, ``data``, ``models``, ``cfg``, ``store``, ``run``.
Nothing below this package prints.
"""
