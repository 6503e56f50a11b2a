"""WiFi: client presence across access points, and the guest WiFi QR code."""
