"""The configuration: a stages.toml read, checked and merged into frozen dataclasses
(``settings``: the dataclasses and names; ``config``: loading and merging;
``config_checks``: each table checked; ``tune_space``: the ``[tune]`` table;
``config_text``: a configuration written back as TOML). The packaged defaults are
``slt_cli/stages.toml``.

Checking a file needs to know what the readers and the model builders accept, so this
package stands above them. May import: ``errors``, ``common``, ``data``, ``models``
(the last two only inside functions, so reading a config never imports torch).
"""
