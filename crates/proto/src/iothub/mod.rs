//! Azure IoT Hub device dialect.
