"""Tests of the Meta sandbox alone, over real HTTP and in process; they need no Django and no tower."""
