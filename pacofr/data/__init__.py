"""Face data: raw data-set formats (``pacofr.data.formats``); the synthetic face generator,
alignment, augmentation and the batch loader follow."""
