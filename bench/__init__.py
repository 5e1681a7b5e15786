"""Benchmarks of tracker: ``python -m bench <command> --help``.

Each command is a module ``bench/<command>.py`` with ``main(argv)``; they print a
readable table and write JSON with ``--json PATH``. Figures and method:
``docs/performance.md``.
"""
