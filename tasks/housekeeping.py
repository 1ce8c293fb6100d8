"""Housekeeping tasks, run from beat's schedule on the control queue."""
