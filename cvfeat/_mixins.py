"""Small mixins shared by the steps whose output is an image batch, not a table."""


class ImageOutputMixin:
    """``set_output`` for steps that output images (loaders, resizers, colour conversions).

    ``Pipeline.set_output(transform='pandas')`` calls ``set_output`` on every
    step; an image batch is not a table, so these steps accept the call and keep
    returning ndarrays; the feature steps after them return DataFrames.
    """

    def set_output(self, *, transform=None):
        """Accepted for Pipeline compatibility; the output stays an image batch.

        Parameters
        ----------
        transform : {'default', 'pandas', 'polars'} or None
            Ignored: images are not tables.

        Returns
        -------
        self
        """
        return self
