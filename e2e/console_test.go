package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser finds Chromium: Debian's package (.ci/run installs it).
func browser(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("no Chromium: install Debian's chromium package (apt-get install chromium) to run the browser test; .ci/run does")
	return ""
}

// newBrowser starts headless Chromium for t; shot saves a screenshot of
// the page when t has failed, in a directory kept after the test.
func newBrowser(t *testing.T) (ctx context.Context, shot func()) {
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // the first run starts the browser: no deadline on it
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx, func() {
		if !t.Failed() {
			return
		}
		sctx, c := context.WithTimeout(ctx, 20*time.Second)
		defer c()
		if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil {
			// Kept after the test (its temp dir is removed): for the
			// person reading the failure.
			if keep, err := os.MkdirTemp("", "raftq-console-failure-"); err == nil {
				p := filepath.Join(keep, t.Name()+".png")
				os.WriteFile(p, png, 0o644)
				t.Logf("screenshot of the failure: %s", p)
			}
		}
	}
}

// run runs browser actions within a generous deadline: CI machines are
// busy, and the pages poll every second.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// click clicks the element sel finds, in the page itself, retrying while
// it is missing: the pages redraw every second, so a node found a moment
// ago may be gone when the click comes.
func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`(() => { const e = document.querySelector(`+strconvQuote(sel)+`); if (!e) return false; e.focus(); e.click(); return true; })()`,
		chromedp.WithPollingTimeout(90*time.Second))
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// The web console in real Chromium against three real nodes: the members
// and the leader; a queue's depth following enqueues made elsewhere,
// without a reload; a peek; a purge through its button and confirmation;
// a node killed shown as not ready.
func TestConsoleInChromium(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	ctx, shot := newBrowser(t)
	defer shot()
	ui := c.procs[0].api + "/ui/"
	run(t, ctx, "the cluster page", chromedp.Navigate(ui+"#/cluster"),
		visible(`#members tbody tr[data-member="3"]`),
		visible(`#members td[data-role="leader"]`))
	if members := eval[int](t, ctx, `document.querySelectorAll("#members tbody tr").length`); members != 3 {
		t.Fatalf("%d members shown", members)
	}
	mustEnqueue(t, c.procs[1], "web", "first")
	if _, err := do("POST", c.procs[1].api+"/queues/bin", "application/octet-stream", strings.NewReader("\xff\x00é")); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "the queues page", chromedp.Navigate(ui+"#/queues"),
		visible(`tr[data-queue="web"] td[data-depth="1"]`))
	mustEnqueue(t, c.procs[2], "web", "second")
	mustEnqueue(t, c.procs[2], "web", "third <b>bold</b>")
	run(t, ctx, "the depth following enqueues without a reload",
		visible(`tr[data-queue="web"] td[data-depth="3"]`))
	run(t, ctx, "the queue page", click(`tr[data-queue="web"] a`),
		visible(`#peek tbody tr[data-message]`))
	peeked := eval[[]string](t, ctx, `[...document.querySelectorAll("#peek tbody td.body")].map(e => e.textContent)`)
	if strings.Join(peeked, "|") != "first|second|third <b>bold</b>" {
		t.Fatalf("peek shows %q", peeked)
	}
	noWrites := func(what string) { // the console's polling reads (read barriers, no log entries)
		t.Helper()
		before := applied(c.procs[0])
		polls := eval[string](t, ctx, `document.getElementById("main").dataset.updated`)
		run(t, ctx, what+": three more polls", chromedp.Poll[chromedp.Void](`Number(document.getElementById("main").dataset.updated) > `+polls+` + 2500`,
			chromedp.WithPollingTimeout(90*time.Second)))
		if after := applied(c.procs[0]); after != before {
			t.Fatalf("%s: the console's polls wrote to the log: applied %d, then %d", what, before, after)
		}
	}
	noWrites("the queue page")
	run(t, ctx, "purging", click(`#purge`), visible(`#confirm[open]`),
		click(`#confirm-ok`),
		visible(`[data-stat="ready"]`),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-stat="ready"] b') && document.querySelector('[data-stat="ready"] b').textContent === "0" && !document.querySelector("#peek tr[data-message]")`,
			chromedp.WithPollingTimeout(90*time.Second)))
	if st := stats(t, c.procs[0], "web"); st.Depth != 0 {
		t.Fatalf("after the purge button: %+v", st)
	}
	run(t, ctx, "the queues page again", chromedp.Navigate(ui+"#/queues"), visible(`tr[data-queue="web"] td[data-depth="0"]`))
	noWrites("the queues page")
	run(t, ctx, "sorting by ready, then down", click(`[data-key="sort-depth"]`), visible(`th[aria-sort="ascending"] [data-key="sort-depth"]`),
		click(`[data-key="sort-depth"]`), visible(`th[aria-sort="descending"] [data-key="sort-depth"]`))
	if first := eval[string](t, ctx, `document.querySelector("#queues tbody tr").dataset.queue`); first != "bin" {
		t.Fatalf("sorted by ready, descending, the first queue is %q", first)
	}
	if focused := eval[string](t, ctx, `document.activeElement.dataset.key || ""`); focused != "sort-depth" {
		t.Fatalf("the redraws took the focus from the sort button to %q", focused)
	}
	run(t, ctx, "the hex of a binary body", chromedp.Navigate(ui+"#/queue/bin"), visible(`#peek tr[data-message]`), click(`#hex`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#peek td.body") && document.querySelector("#peek td.body").textContent === "ff 00 c3 a9"`,
			chromedp.WithPollingTimeout(90*time.Second)))
	run(t, ctx, "the cluster page", chromedp.Navigate(ui+"#/cluster"), visible(`tr[data-member="3"] td[data-ready="yes"]`))
	noWrites("the cluster page")
	c.kill(2)
	run(t, ctx, "a failed node shown", chromedp.Navigate(ui+"#/cluster"),
		visible(`tr[data-member="3"] td[data-ready="no"]`),
		visible(`tr[data-member="1"] td[data-ready="yes"]`))
}

// With tokens the console asks for one, keeps it for the session, and
// shows only the actions its roles allow.
func TestConsoleWithTokens(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("tok-admin admin,producer,consumer\ntok-reader consumer\ntok-writer producer\n"), 0o600)
	c := prepareCluster(t, 1, nil, "--auth-token-file", file)
	u, _ := url.Parse(c.procs[0].api)
	harnessTokens.hosts.Store(u.Host, "tok-admin")
	c.startAll()
	mustEnqueue(t, c.procs[0], "guarded", "x")
	ctx, shot := newBrowser(t)
	defer shot()
	ui := c.procs[0].api + "/ui/"
	run(t, ctx, "the login form", chromedp.Navigate(ui+"#/queue/guarded"), visible(`#token`),
		chromedp.SendKeys(chromedp.CSS(`#token`), "tok-reader\n"),
		visible(`#peek tbody tr[data-message]`))
	purge, send, lease := eval[bool](t, ctx, `!!document.querySelector("#purge")`), eval[bool](t, ctx, `!!document.querySelector("#send")`),
		eval[bool](t, ctx, `!!document.querySelector("#lease")`)
	if purge || send || !lease {
		t.Fatalf("a consumer's token shows purge %v, send %v, lease %v", purge, send, lease)
	}
	kept := eval[string](t, ctx, `sessionStorage.getItem("raftq-token") + "|" + (localStorage.getItem("raftq-token") || "")`)
	if kept != "tok-reader|" {
		t.Fatalf("token storage %q", kept)
	}
	run(t, ctx, "the cluster page as a consumer", chromedp.Navigate(ui+"#/cluster"), visible(`#members tr[data-member="1"]`))
	if admin := eval[int](t, ctx, `document.querySelectorAll("#members button").length + document.querySelectorAll("main form").length`); admin != 0 {
		t.Fatalf("a consumer's token shows %d member actions", admin)
	}
	// A producer's token: send, and nothing of a consumer's or an admin's.
	run(t, ctx, "logging in as a producer", click(`#who button`), visible(`#token`), chromedp.SendKeys(chromedp.CSS(`#token`), "tok-writer\n"),
		chromedp.Navigate(ui+"#/queue/guarded"), visible(`#send`))
	for _, sel := range []string{"#peek", "#lease", "#purge", "#delete"} {
		if eval[bool](t, ctx, `!!document.querySelector("`+sel+`")`) {
			t.Fatalf("a producer's token shows %s", sel)
		}
	}
}
