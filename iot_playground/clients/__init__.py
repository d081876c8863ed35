"""HTTP clients of the API (`iot-playground simulate`, `load`, `interrupt-all`): they speak HTTP only."""
