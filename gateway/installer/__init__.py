"""The installer's toolkit behind ``hamlet gateway init|doctor|ports|status|tail``."""
