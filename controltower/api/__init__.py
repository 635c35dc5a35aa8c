"""The Control Tower's REST API (`/meta/control-tower/`)."""
