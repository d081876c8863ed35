"""Developer and operator tools around the IoT Playground API (not deployed to Lambda).

One folder or module per kind of tool; `cli.py` is their one command line (`iot-playground`).
Imports only go down this list (tests/test_layout.py checks it):

    cli.py        the `iot-playground` command: options and help, nothing else
    clients.py    the API's clients: simulate (one run or many, verified), interrupt-all
    local/        `make run`: the embedded endpoint and `chalice local`
    deploy/       stages' artifacts and operations: policies, templates, packages, tables, guards
    migration.py  the old backend's PostgreSQL into the tables
    common/       what every tool shares: the stages of .chalice/config.json, the terminal
    chalicelib    (the deployed API's package) is below them all and imports none of them.
"""
