"""The ``hopline`` command: wires the gateway, processor, TUI and load tester together."""
