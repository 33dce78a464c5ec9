"""The interactive terminal client."""
