"""Developer and operator tools around the IoT Playground API (not deployed to Lambda), one folder
or module per kind: `cli.py`, their one command line (`iot-playground`: options and help, nothing
else); `clients.py`, the API's clients (simulate, interrupt-all); `local/`, `make run`; `deploy/`,
the stages' artifacts and operations; `migration.py`, the old backend's PostgreSQL into the tables;
`common/`, what every tool shares. Imports only go down this list; `chalicelib` (the deployed API's
package) is below them all and imports none of them.
"""
