"""Data moves run once by an operator: the old backend's PostgreSQL into the tables
(`iot-playground migrate`), old-layout readings into chunks (`migrate-readings-layout`).
What only they write (imported runs and readings) lives here, not in the Lambda package."""
