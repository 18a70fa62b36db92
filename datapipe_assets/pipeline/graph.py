"""The transform graph's shape: cycles, a run order, and the nodes a node depends on."""

from __future__ import annotations

import graphlib

from datapipe_assets.pipeline.spec import TransformSpec


def find_cycle(nodes: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """A cycle's path (first node repeated at the end), by three-colour depth-first search."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        if source in children and target in children:
            children[source].append(target)
    colour = dict.fromkeys(nodes, "white")
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = "grey"
        stack.append(node)
        for child in children[node]:
            if colour[child] == "grey":
                return [*stack[stack.index(child) :], child]
            if colour[child] == "white" and (found := visit(child)):
                return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in nodes:
        if colour[node] == "white" and (found := visit(node)):
            return found
    return None


def graph_edges(transform: TransformSpec) -> list[tuple[str, str]]:
    """(input, node) for every input of every node, from edges and `inputs` alike."""
    return [(i.source, n.id) for n in transform.nodes for i in transform.inputs_of(n.id)]


def topological_order(transform: TransformSpec) -> list[str]:
    """Node ids with every node after all of its inputs (the graph is known to be acyclic)."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for node in transform.nodes:
        sorter.add(node.id, *(i.source for i in transform.inputs_of(node.id)))
    return list(sorter.static_order())


def ancestors(transform: TransformSpec, node_id: str) -> set[str]:
    """The node and every node it reads from, directly or not."""
    found, pending = set(), [node_id]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending += [i.source for i in transform.inputs_of(current)]
    return found
