"""The artifact pages and the lineage graph in a real headless Chromium (test_dashboard.py's
browser and page fixtures), against real `tracklet server --dev` and `tracklet ui` processes over a
data root where real runs logged and used real artifacts (tests/artifact_chain.py):

    prep -> mnist:v0 -> train -> model:v0 -> evaluate -> report:v0   (and secret/spy used mnist:v0)
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from artifact_chain import MNIST_FILES, SHARDS, record_chain
from serverproc import cli
from test_dashboard import ARTIFACTS, CHROMIUM, STATIC, allowed_errors, browser, page, start_ui  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not STATIC.exists(), reason="the dashboard bundle is not built (npm run build in web/)"),
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("chain")
    record_chain(base / "data", base / "scratch")
    return base / "data"


def _rows(tab, selector: str, attribute: str) -> list[str]:
    return tab.eval_on_selector_all(selector, f"rows => rows.map(r => r.dataset.{attribute})")


def test_artifacts_list_and_versions_show_aliases_and_metadata(servers, chain, page, tmp_path):  # noqa: F811
    root = tmp_path / "data"
    shutil.copytree(chain, root)  # this test damages a version file at the end
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/chain")
    page.click("a.artifacts-link")
    page.wait_for_selector("table.collections tr[data-name='mnist']")
    assert page.url == server.url + "/projects/chain/artifacts"
    assert sorted(_rows(page, "table.collections tr[data-name]", "name")) == ["mnist", "model", "report"]
    mnist = page.locator("table.collections tr[data-name='mnist']")
    assert mnist.locator("td").nth(1).text_content() == "2"  # versions
    assert mnist.locator("td").nth(2).text_content() == "v1"  # latest
    assert mnist.locator(".alias").all_text_contents() == ["latest-refresh"]
    assert page.locator("section[data-type='model'] tr[data-name='model'] .alias").all_text_contents() == ["best"]

    mnist.locator("a").first.click()
    page.wait_for_selector("table.versions tr[data-version='v0']")
    assert page.url == server.url + "/projects/chain/artifacts/mnist"
    assert _rows(page, "table.versions tr[data-version]", "version") == ["v1", "v0"]  # newest first
    v0 = page.locator("table.versions tr[data-version='v0']")
    assert v0.locator(".alias").all_text_contents() == ["raw"]
    assert page.locator("table.versions tr[data-version='v1'] .alias").all_text_contents() == ["latest", "latest-refresh"]
    assert v0.locator(".size").text_content() == "3.1 kB"  # 3,202 bytes
    assert "rows=3" in v0.locator(".metadata").text_content()
    assert v0.locator(".run-link").text_content() == "prep"

    with page.expect_response(lambda r: r.url.endswith("/api/v1/runs/chain/other/artifacts")) as answered:
        page.goto(server.url + "/projects/chain/runs/other")  # a run without artifacts: no card
    assert answered.value.json() == {"logged": [], "used": []}
    page.wait_for_selector("dd[data-field='state']")
    assert page.locator(".run-artifacts-card").is_hidden()

    # A version's tags and history step (tags edited with save(), W&B's way) on its page.
    import tracklet

    edited = tracklet.Api(root).artifact("chain/mnist:v0")
    edited.tags = ["gold set", "v-2"]
    edited.save()
    page.goto(server.url + "/projects/chain/artifacts/mnist/v0")
    page.wait_for_selector("dd[data-field='tags'] .tag")
    assert page.locator("dd[data-field='tags'] .tag").all_text_contents() == ["gold set", "v-2"]
    assert edited.history_step is not None
    assert page.text_content("dd[data-field='history step']") == str(edited.history_step)
    page.goto(server.url + "/projects/chain/artifacts/mnist/v1")  # no tags: a muted dash
    page.wait_for_selector("dd[data-field='tags']")
    assert page.text_content("dd[data-field='tags']") == "-"

    # A damaged version file: its row says what is wrong, the collection's other versions show.
    (root / "artifacts" / "projects" / "chain" / "mnist" / "versions" / "v0.json").write_text("{broken")
    page.goto(server.url + "/projects/chain/artifacts/mnist")
    page.wait_for_selector("table.versions tr.damaged[data-version='v0']")
    assert _rows(page, "table.versions tr[data-version]", "version") == ["v1", "v0"]
    assert "v0.json is damaged" in page.text_content("tr.damaged .error")


def test_version_page_file_browser_lists_sizes_and_digests_and_filters(chain, page):  # noqa: F811
    ui, url, token = start_ui(chain)  # the local data root, read-only
    try:
        page.goto(url + "projects/chain/artifacts/mnist/raw?token=" + token)  # an alias names the version
        page.wait_for_selector(".file-browser tr.dir[data-path='images']")
        assert page.text_content("h1") == "mnist:v0"
        assert page.locator("dd[data-field='aliases'] .alias").all_text_contents() == ["v0", "raw"]
        assert page.locator("dd[data-field='logged by'] .run-link").all_text_contents() == ["prepare-data"]
        assert page.locator("dd[data-field='used by'] .run-link").all_text_contents() == ["train-cnn", "spy"]
        assert page.locator("table.metadata th").all_text_contents() == ["rows", "split"]

        def listed() -> dict[str, str]:
            return dict(page.eval_on_selector_all(".file-browser tbody tr[data-path]", "rows => rows.map(r => "
                                                  "[r.dataset.path, r.querySelector('.size').textContent])"))

        assert listed() == {"images": "3.1 kB", "README.md": "9 B", "labels.csv": "21 B"}
        page.click("a.dir-link[data-dir='images']")
        page.wait_for_selector("tr.dir[data-path='images/train']")
        assert "dir=images" in page.url
        page.click("a.dir-link[data-dir='images/train']")
        page.wait_for_selector("tr.file[data-path='images/train/0.bin']")
        assert listed() == {"images/train/0.bin": "1.0 kB", "images/train/1.bin": "2.0 kB"}
        digest = page.get_attribute("tr.file[data-path='images/train/0.bin'] .digest", "title")
        assert digest == "sha256 " + hashlib.sha256(MNIST_FILES["images/train/0.bin"]).hexdigest()
        page.click(".file-crumbs a.crumb[data-dir='']")  # back to the top
        page.wait_for_selector("tr.dir[data-path='images']")

        page.fill("input.file-filter", "0.bin")
        page.wait_for_selector("tr.file[data-path='images/test/0.bin']")
        assert listed() == {"images/test/0.bin": "100 B", "images/train/0.bin": "1.0 kB"}
        assert page.text_content(".file-info") == "2 of 2 matching files"
        page.reload()  # the filter is in the URL
        page.wait_for_selector("tr.file[data-path='images/test/0.bin']")
        assert sorted(listed()) == ["images/test/0.bin", "images/train/0.bin"]

        page.goto(url + "projects/bulk/artifacts/shards/v0?dir=parts")  # more files than a page
        page.wait_for_selector("tr.file[data-path='parts/000.txt']")
        assert len(listed()) == 200 and page.text_content(".file-info") == f"200 of {SHARDS} entries"
        page.click(".file-browser button.more")
        page.wait_for_function(f"() => document.querySelectorAll('.file-browser tr.file').length === {SHARDS}")
        assert list(listed()) == [f"parts/{n:03d}.txt" for n in range(SHARDS)]  # in order, each once
        assert listed()["parts/204.txt"] == "204 B" and page.locator(".file-browser button.more").is_hidden()
    finally:
        ui.terminate()
        ui.wait(timeout=10)


def _graph(tab) -> tuple[dict[str, int], set[tuple[str, str, str]]]:
    nodes = dict(tab.eval_on_selector_all("svg.lineage-graph g.lineage-node",
                                          "gs => gs.map(g => [g.dataset.id, Number(g.dataset.layer)])"))
    edges = tab.eval_on_selector_all("svg.lineage-graph path.lineage-edge",
                                     "ps => ps.map(p => [p.dataset.source, p.dataset.target, p.dataset.kind])")
    return nodes, {tuple(edge) for edge in edges}


def test_lineage_graph_from_a_run_page_shows_the_chain_and_nodes_navigate(servers, chain, page):  # noqa: F811
    server = servers(chain, dev=True)
    page.goto(server.url + "/projects/chain/runs/train")
    card = page.wait_for_selector(".run-artifacts-card:not([hidden])")
    assert page.locator("[data-list='used'] tr").evaluate_all("rows => rows.map(r => r.dataset.artifact)") == [
        "chain/mnist:v0"]
    assert page.locator("[data-list='logged'] tr").evaluate_all("rows => rows.map(r => r.dataset.artifact)") == [
        "chain/model:v0"]
    assert page.locator("[data-list='logged'] .alias").all_text_contents() == ["latest", "best"]
    card.query_selector("a.lineage-link").click()
    page.wait_for_selector("svg.lineage-graph g.lineage-node")
    assert page.url == server.url + "/projects/chain/runs/train/lineage"

    nodes, edges = _graph(page)  # 3 hops from train, both ways
    assert set(nodes) == {"run:chain/prep", "artifact:chain/mnist:v0", "run:chain/train", "artifact:chain/model:v0",
                          "run:chain/evaluate", "artifact:chain/report:v0", "run:secret/spy"}
    assert edges == {
        ("run:chain/prep", "artifact:chain/mnist:v0", "logged"),
        ("artifact:chain/mnist:v0", "run:chain/train", "used"),
        ("artifact:chain/mnist:v0", "run:secret/spy", "used"),
        ("run:chain/train", "artifact:chain/model:v0", "logged"),
        ("artifact:chain/model:v0", "run:chain/evaluate", "used"),
        ("run:chain/evaluate", "artifact:chain/report:v0", "logged"),
        ("artifact:chain/report:v0", "run:chain/evaluate", "used"),  # a cycle: drawn back, below
    }
    chain_order = ["run:chain/prep", "artifact:chain/mnist:v0", "run:chain/train", "artifact:chain/model:v0",
                   "run:chain/evaluate", "artifact:chain/report:v0"]
    assert [nodes[node] for node in chain_order] == [0, 1, 2, 3, 4, 5]  # layered left to right
    lefts = [page.locator(f"g.lineage-node[data-id='{node}'] rect").bounding_box()["x"] for node in chain_order]
    assert lefts == sorted(lefts) and len(set(lefts)) == 6  # drawn left to right
    assert page.locator("g.lineage-node.root").get_attribute("data-id") == "run:chain/train"
    # Every edge runs from its source's box (right side) to its target's box (left side), at half their
    # height; the one edge against the flow (the cycle) from its source's left side to its target's right
    # side, at three quarters.
    ends = page.evaluate("""() => [...document.querySelectorAll('path.lineage-edge')].map(p => {
        const box = id => { const g = document.querySelector(`g.lineage-node[data-id='${id}']`);
                            const m = g.transform.baseVal.consolidate().matrix, r = g.querySelector('rect');
                            return [m.e, m.f, r.width.baseVal.value, r.height.baseVal.value]; };
        const a = p.getPointAtLength(0), b = p.getPointAtLength(p.getTotalLength());
        return [p.classList.contains('back'), [a.x, a.y], [b.x, b.y], box(p.dataset.source), box(p.dataset.target)];
    })""")
    assert len(ends) == len(edges) and sum(back for back, *_ in ends) == 1
    for back, (ax, ay), (bx, by), (sx, sy, sw, sh), (tx, ty, tw, th) in ends:
        if back:
            assert (ax, ay) == pytest.approx((sx, sy + sh * 0.75)) and (bx, by) == pytest.approx((tx + tw, ty + th * 0.75))
        else:
            assert (ax, ay) == pytest.approx((sx + sw, sy + sh / 2)) and (bx, by) == pytest.approx((tx, ty + th / 2))
    assert "train-cnn" in page.text_content("g.lineage-node[data-id='run:chain/train'] text.title")
    assert "best" in page.text_content("g.lineage-node[data-id='artifact:chain/model:v0'] text.subtitle")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lineage-graph.png"))
    page.select_option("select.hops", "1")  # fewer hops: only the neighbours
    page.wait_for_function("() => document.querySelectorAll('g.lineage-node').length === 3")
    assert set(_graph(page)[0]) == {"artifact:chain/mnist:v0", "run:chain/train", "artifact:chain/model:v0"}
    assert "hops=1" in page.url

    page.click("g.lineage-node[data-id='artifact:chain/model:v0'] rect")  # a node navigates to its page
    page.wait_for_selector("h1:text('model:v0')")
    assert page.url == server.url + "/projects/chain/artifacts/model/v0"
    page.click("a.lineage-link")  # and the version's own graph
    page.wait_for_selector("g.lineage-node.root[data-id='artifact:chain/model:v0']")
    page.click("g.lineage-node[data-id='run:chain/evaluate'] rect")
    page.wait_for_selector(".run-artifacts-card:not([hidden])")
    assert page.url == server.url + "/projects/chain/runs/evaluate"


def test_collections_show_their_own_description_and_tags(servers, chain, page, tmp_path):  # noqa: F811
    """A collection's own description and tags (set here with `tracklet artifact edit`) show in the
    project's listing and on the collection's page, as text (markup in a description stays text);
    a collection without tags shows a muted dash, as a version does."""
    root = tmp_path / "data"
    shutil.copytree(chain, root)
    edited = cli("--dir", str(root), "artifact", "edit", "chain/mnist", "-d", "<b>digits</b> & labels",
                 "--tag", "vision", "--tag", "hand written")
    assert edited.returncode == 0, edited.stderr
    server = servers(root, dev=True)
    page.goto(server.url + "/projects/chain/artifacts")
    page.wait_for_selector("table.collections tr[data-name='mnist'] .collection-tags .tag")
    mnist = page.locator("table.collections tr[data-name='mnist']")
    assert mnist.locator(".collection-tags .tag").all_text_contents() == ["vision", "hand written"]
    assert mnist.locator(".collection-description").text_content() == "<b>digits</b> & labels"
    assert mnist.locator(".collection-description b").count() == 0
    model = page.locator("section[data-type='model'] tr[data-name='model']")
    assert model.locator(".collection-tags").text_content() == "-"
    assert model.locator(".collection-description").count() == 0

    mnist.locator("a").first.click()
    page.wait_for_selector(".pane-head .collection-tags .tag")
    assert page.locator(".pane-head .collection-tags .tag").all_text_contents() == ["vision", "hand written"]
    assert page.text_content("p[data-field='collection-description']") == "<b>digits</b> & labels"
    assert _rows(page, "table.versions tr[data-version]", "version") == ["v1", "v0"]  # the versions as before
