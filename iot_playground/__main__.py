"""`python -m iot_playground`: the same command line as `iot-playground`, without the install."""

from iot_playground.cli import main

main()
