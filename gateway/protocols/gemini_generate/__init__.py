"""Gemini ``generateContent`` / ``streamGenerateContent`` / ``countTokens`` as an inbound protocol."""
