"""Read a workflow's ``outputnode`` values after a run.

Nipype drops identity nodes from the graph it executes, so the values are read from the
nodes that feed the ``outputnode``.
"""

from __future__ import annotations


def collect_outputs(workflow, exec_graph, outputnode="outputnode"):
    """Return ``{field: value}`` of ``workflow``'s ``outputnode`` after ``workflow.run``.

    Parameters
    ----------
    workflow : nipype Workflow
        The workflow that was run (top level).
    exec_graph : networkx.DiGraph
        What ``workflow.run`` returned.
    outputnode : str
        Name of the output node inside ``workflow``.
    """
    flat = workflow._create_flat_graph()
    executed = {node.fullname: node for node in exec_graph.nodes()}
    target = [node for node in flat.nodes() if node.name == outputnode
              and node.fullname.count(".") == 1]
    if not target:
        raise ValueError(f"{workflow.name} has no node named {outputnode!r}.")
    target = target[0]
    values = {}
    for field in target.inputs.copyable_trait_names():
        value = getattr(target.inputs, field)
        if value.__class__.__name__ != "_Undefined":
            values[field] = value
    for source, _, data in flat.in_edges(target, data=True):
        node = executed.get(source.fullname, source)
        results = node.result.outputs
        for src_field, dst_field in data["connect"]:
            src = src_field if isinstance(src_field, str) else src_field[0]
            values[dst_field] = getattr(results, src)
    return values
