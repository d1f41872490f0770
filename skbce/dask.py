"""Training block by block with dask-ml: a multi-label ``Incremental``.

:class:`dask_ml.wrappers.Incremental` calls ``partial_fit`` on the blocks
of ``X`` and ``y`` in turn, and reads block ``i`` of ``y`` under the key of a
1-D array; a 2-D label array's blocks have 2-D keys, so dask-ml hands
``partial_fit`` a placeholder instead of the labels ("inconsistent numbers
of samples"). :func:`label_blocks` gives a 2-D label array those keys, and
:class:`Incremental` applies it for you, after lining both arrays up in
blocks of whole rows. Needs the ``dask`` extra (dask-ml).
"""

import inspect

import dask
import numpy as np
from dask_ml.wrappers import Incremental as _DaskMLIncremental

from skbce._dask import as_row_blocks

__all__ = ["Incremental", "label_blocks"]


def label_blocks(Y, row_chunks=None):
    """``Y``'s blocks of whole rows, under the 1-D keys dask-ml's ``Incremental`` reads.

    Parameters
    ----------
    Y : dask array of shape (n_samples,) or (n_samples, n_labels)
        Targets; rechunked to one chunk along the labels.

    row_chunks : tuple of int, default=None
        The row chunks of ``X``, to line ``Y`` up with (None: ``Y``'s own).

    Returns
    -------
    Y_blocks : dask array
        A 1-D ``Y`` as it is (rechunked if needed). For a 2-D ``Y``, a dask
        array that dask-ml reads as 1-D: its block ``i`` is the
        ``(rows, n_labels)`` block ``i`` of ``Y``. Use it only as the ``y``
        of ``Incremental``; its shape is that of a 1-D array.

    Examples
    --------
    >>> import dask.array as da
    >>> from skbce.dask import label_blocks
    >>> Y = da.zeros((6, 3), chunks=(2, 1))
    >>> label_blocks(Y).blocks[1].compute().shape
    (2, 3)
    """
    Y = as_row_blocks(Y, "y", row_chunks)
    if Y.ndim == 1:
        return Y
    return Y.map_blocks(_same_block, drop_axis=1, dtype=Y.dtype,
                        meta=np.empty(0, dtype=Y.dtype))


def _same_block(block):
    return block


class Incremental(_DaskMLIncremental):
    """dask-ml's ``Incremental`` for multi-label targets.

    The same wrapper as :class:`dask_ml.wrappers.Incremental` -- every call
    of :meth:`partial_fit` is one pass of the estimator's ``partial_fit``
    over the blocks of ``X`` and ``y``, in a shuffled order -- but ``X`` is
    first rechunked to blocks of whole rows, ``y`` to ``X``'s row blocks,
    and a 2-D ``y`` goes through :func:`label_blocks`: a plain 2-D dask label
    array works. Each block's ``partial_fit`` is told the rows of the pass
    (``n_samples_per_pass``, ``X``'s rows, unless given), so that ``C``
    means what it means in the estimator's ``fit`` on ``X``, and
    :class:`~skbce.MultiLabelLogistic` takes one Newton step per pass
    (see its ``partial_fit``).

    Parameters
    ----------
    estimator : estimator
        An estimator with ``partial_fit``, such as ``MultiLabelLogistic()``.

    scoring, shuffle_blocks, random_state, assume_equal_chunks, predict_meta, \
predict_proba_meta, transform_meta
        As for :class:`dask_ml.wrappers.Incremental`.

    Attributes
    ----------
    estimator_ : estimator
        The estimator trained so far.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from skbce import MultiLabelLogistic
    >>> from skbce.dask import Incremental
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.normal(size=(600, 4)), chunks=200)
    >>> Y = (X[:, :2] > 0).astype(int)      # a plain 2-D label array
    >>> model = Incremental(MultiLabelLogistic(random_state=0))
    >>> for epoch in range(3):
    ...     _ = model.partial_fit(X, Y)
    >>> model.estimator_.coef_.shape
    (2, 4)
    """

    def _fit_for_estimator(self, estimator, X, y, **fit_kwargs):
        if dask.is_dask_collection(X) or dask.is_dask_collection(y):
            X = as_row_blocks(X, "X")
            if y is not None:
                y = label_blocks(y, X.chunks[0])
        if "n_samples_per_pass" in inspect.signature(estimator.partial_fit).parameters:
            fit_kwargs.setdefault("n_samples_per_pass", X.shape[0])
        return super()._fit_for_estimator(estimator, X, y, **fit_kwargs)
