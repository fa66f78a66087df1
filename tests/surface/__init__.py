"""Surface and CIFTI-2 tests."""
