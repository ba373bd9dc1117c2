"""The network and its file: pure functions of a parameter pytree.

:mod:`~polyvae.nn.model` is the VAE (encoder, decoder, loss) in JAX;
:mod:`~polyvae.nn.steps` compiles an epoch's optimizer steps;
:mod:`~polyvae.nn.latent_codes` keeps where generated structures start;
:mod:`~polyvae.nn.encoder_numpy` is the encoder in NumPy for processes without JAX;
:mod:`~polyvae.nn.checkpoint` reads and writes the model file's container and
:mod:`~polyvae.nn.train_state` the state a resumed training needs.
"""
