"""Framework integrations (Lightning, Hugging Face, Keras, JAX, autolog) arrive here; see issue #4."""
