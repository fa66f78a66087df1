"""fsaverage5 ships with nilearn: loading it never touches the network."""

import socket


def test_fsaverage5_loads_with_network_disabled(monkeypatch):
    from nilearn.datasets import load_fsaverage

    from glmflow.core.surface import resolve_mesh

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    mesh = load_fsaverage("fsaverage5")["pial"]
    assert {hemi: part.n_vertices for hemi, part in mesh.parts.items()} == {
        "left": 10242, "right": 10242}
    assert resolve_mesh("fsaverage5").parts["right"].faces.shape == (20480, 3)
