"""fullcap: real-time monocular full-body capture (body, hands, face) from one RGB camera."""

__version__ = "0.1.0"
