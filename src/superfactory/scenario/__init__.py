"""The edge: scenario files (YAML schema, validation with precise errors), built-in scenarios, synthetic
generators calibrated on published figures, and loaders of public data formats."""
