"""Calibration sets and procedures: int8 ranges, step-schedule search, on-device autotune."""
