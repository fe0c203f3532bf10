import numpy as np
import torch

from fedcluster.fl.clustering import agreement, kmeans_labels, sketch

torch.set_num_threads(1)


def test_sketch_is_seeded_and_independent_of_chunking_and_batching():
    x = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0))
    a = sketch(x, 32, seed=3, chunk=1000)
    assert a.shape == (5, 32)
    assert torch.allclose(sketch(x, 32, seed=3, chunk=1000), a)
    assert not torch.allclose(sketch(x, 32, seed=4, chunk=1000), a)
    # the projection is drawn per chunk: other chunk sizes give another (equally valid)
    # projection, but one vector alone meets the same one as in a batch
    b = sketch(x, 32, seed=3, chunk=128)
    assert torch.allclose(sketch(x[2], 32, seed=3, chunk=128), b[2], atol=1e-5)
    # linear: sketch(x + y) = sketch(x) + sketch(y)
    assert torch.allclose(sketch(x[0] + x[1], 32, 3, 128), b[0] + b[1], atol=1e-4)
    # one +-1 per coordinate: a basis vector lands, signed, in exactly one bucket
    e = torch.zeros(1000)
    e[417] = 2.0
    hit = sketch(e, 32, seed=3, chunk=128)
    assert (hit != 0).sum() == 1 and hit.abs().max() == 2.0


def test_sketch_keeps_distances_roughly():
    x = torch.randn(20, 4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = sketch(x, 512, seed=0, chunk=700).double()
    d_full, d_sketch = torch.pdist(x), torch.pdist(s)
    ratio = d_sketch / d_full
    assert float(ratio.min()) > 0.8 and float(ratio.max()) < 1.2


def test_sketch_clustering_matches_full_vector_clustering_on_groups():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(4, 20000, generator=g)
    truth = np.repeat(np.arange(4), 6)
    x = centres[truth] + 0.5 * torch.randn(24, 20000, generator=g)
    full = kmeans_labels(x.double().numpy(), 4, seed=0)
    small = kmeans_labels(sketch(x, 64, seed=0, chunk=4096).double().numpy(), 4, seed=0)
    assert agreement(full, small)[0] == 1.0 and agreement(truth, small)[0] == 1.0


def test_principal_coords_keep_distances_and_match_pca():
    from sklearn.decomposition import PCA

    from fedcluster.fl.clustering import principal_coords

    x = torch.randn(7, 300, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pc = principal_coords(x, chunk=64)
    assert pc.shape == (7, 6)  # 7 points span 6 dimensions
    assert torch.allclose(torch.pdist(torch.from_numpy(pc)), torch.pdist(x), atol=1e-9)
    ref = PCA(n_components=2).fit_transform(x.numpy())
    assert np.allclose(np.abs(pc[:, :2]), np.abs(ref), atol=1e-8)  # up to the axes' signs
