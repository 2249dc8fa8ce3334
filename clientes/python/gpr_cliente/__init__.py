"""Biblioteca cliente de GpR Monitor para los sistemas de las agencias (ver README.md)."""
