package e2e

import (
	"context"
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
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

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
	run(t, ctx, "purging", click(`#purge`), visible(`#confirm[open]`),
		click(`#confirm-ok`),
		visible(`[data-stat="ready"]`),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-stat="ready"] b') && document.querySelector('[data-stat="ready"] b').textContent === "0" && !document.querySelector("#peek tr[data-message]")`,
			chromedp.WithPollingTimeout(90*time.Second)))
	if st := stats(t, c.procs[0], "web"); st.Depth != 0 {
		t.Fatalf("after the purge button: %+v", st)
	}
	// The console's polling reads (read barriers, no log entries): with
	// the queues page open on an idle cluster, nothing is applied.
	run(t, ctx, "the queues page again", chromedp.Navigate(ui+"#/queues"), visible(`tr[data-queue="web"] td[data-depth="0"]`))
	applied := func() uint64 {
		var st struct{ Applied uint64 }
		if _, err := getJSON(c.procs[0].api+"/debug/state", &st); err != nil {
			t.Fatal(err)
		}
		return st.Applied
	}
	before, polls := applied(), eval[string](t, ctx, `document.getElementById("main").dataset.updated`)
	run(t, ctx, "three more polls", chromedp.Poll[chromedp.Void](`Number(document.getElementById("main").dataset.updated) > `+polls+` + 2500`,
		chromedp.WithPollingTimeout(90*time.Second)))
	if after := applied(); after != before {
		t.Fatalf("the console's polls wrote to the log: applied %d, then %d", before, after)
	}
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
	os.WriteFile(file, []byte("tok-admin admin,producer,consumer\ntok-reader consumer\n"), 0o600)
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
}
