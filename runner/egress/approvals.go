package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Pending is a denied destination waiting for an operator's decision.
type Pending struct {
	ID     string    `json:"id"`
	Host   string    `json:"host"`
	Port   int       `json:"port"`
	Binary string    `json:"binary,omitempty"`
	Method string    `json:"method,omitempty"`
	Path   string    `json:"path,omitempty"`
	Since  time.Time `json:"since"`
	// Waiting is how many requests are blocked on it right now.
	Waiting int `json:"waiting"`
	// Attempts counts requests that asked for it, including timed-out ones.
	Attempts int `json:"attempts"`
}

// Approval is a granted destination.
type Approval struct {
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Saved bool   `json:"saved,omitempty"`
}

// ErrNoSuchApproval is returned for an unknown approval id.
var ErrNoSuchApproval = errors.New("no pending approval with that id")

type pendingReq struct {
	Pending
	done     chan struct{}
	approved bool
}

// approvals is the queue of denied destinations and the grants made from it.
type approvals struct {
	p       *Proxy
	mu      sync.Mutex
	seq     int
	pending map[string]*pendingReq // by host:port
	byID    map[string]*pendingReq
	grants  []Approval
	eps     atomic.Pointer[[]*endpoint]
	closed  bool
	changed chan struct{}
}

const maxPending = 256

func newApprovals(p *Proxy) *approvals {
	a := &approvals{p: p, pending: map[string]*pendingReq{}, byID: map[string]*pendingReq{}, changed: make(chan struct{})}
	a.eps.Store(&[]*endpoint{})
	return a
}

// granted returns the endpoints approved so far (lock-free).
func (a *approvals) granted() []*endpoint { return *a.eps.Load() }

func (a *approvals) notify() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// waitApproval queues t (or joins its queue entry). With Config.Approvals
// it blocks until an operator decides, the bounded wait ends, or the client
// goes away; without, the request is refused at once and the entry stays
// listed, so that an approval lets the next attempt through.
func (p *Proxy) waitApproval(ctx context.Context, t target, ci *connInfo, method, path string) bool {
	a := p.appr
	key := t.String()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return false
	}
	pr, ok := a.pending[key]
	if !ok {
		if len(a.pending) >= maxPending {
			a.evictOldest()
		}
		a.seq++
		pr = &pendingReq{Pending: Pending{ID: strconv.Itoa(a.seq), Host: t.host, Port: t.port, Method: method, Path: clip(path), Since: time.Now()}, done: make(chan struct{})}
		if pi := ci.peer.get(); pi != nil {
			pr.Binary = pi.exe
		}
		a.pending[key], a.byID[pr.ID] = pr, pr
		p.log.Info("egress approval requested", "id", pr.ID, "host", t.host, "port", t.port, "binary", Printable(pr.Binary),
			"hint", fmt.Sprintf("nemoclaw policy approvals %s", p.cfg.Sandbox))
	}
	pr.Attempts++
	if !p.cfg.Approvals {
		a.notify()
		a.mu.Unlock()
		return false
	}
	pr.Waiting++
	done := pr.done
	a.notify()
	a.mu.Unlock()

	timer := time.NewTimer(p.cfg.ApprovalTimeout)
	defer timer.Stop()
	approved := false
	select {
	case <-done:
		approved = pr.approved
	case <-timer.C:
	case <-ctx.Done():
	}
	a.mu.Lock()
	pr.Waiting--
	a.mu.Unlock()
	return approved
}

func (a *approvals) evictOldest() {
	var oldest *pendingReq
	for _, pr := range a.pending {
		if oldest == nil || pr.Since.Before(oldest.Since) {
			oldest = pr
		}
	}
	if oldest != nil {
		a.remove(oldest)
		close(oldest.done)
	}
}

func (a *approvals) remove(pr *pendingReq) {
	delete(a.pending, net2key(pr.Host, pr.Port))
	delete(a.byID, pr.ID)
}

func net2key(h string, port int) string { return target{host: h, port: port}.String() }

// Pending lists the destinations waiting for a decision, oldest first.
func (p *Proxy) Pending() []Pending {
	a := p.appr
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Pending, 0, len(a.pending))
	for _, pr := range a.pending {
		out = append(out, pr.Pending)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Approvals lists the grants made during this sandbox's life (and saved ones).
func (p *Proxy) Approvals() []Approval {
	p.appr.mu.Lock()
	defer p.appr.mu.Unlock()
	return append([]Approval(nil), p.appr.grants...)
}

// WaitPending blocks until the pending list changes or ctx ends.
func (p *Proxy) WaitPending(ctx context.Context) {
	p.appr.mu.Lock()
	ch := p.appr.changed
	p.appr.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// Decide approves or denies a pending destination. An approval lets every
// later request to host:port through for the sandbox's life (L4: no path
// rules); with save it is also written to the approvals file and applies to
// the next start of the same sandbox.
func (p *Proxy) Decide(id string, approve, save bool) (Pending, error) {
	a := p.appr
	a.mu.Lock()
	defer a.mu.Unlock()
	pr, ok := a.byID[id]
	if !ok {
		return Pending{}, fmt.Errorf("decide %s: %w (list them with `nemoclaw policy approvals %s`)", id, ErrNoSuchApproval, p.cfg.Sandbox)
	}
	if approve {
		ap := Approval{Host: pr.Host, Port: pr.Port, Saved: save}
		if err := a.grantLocked(ap); err != nil {
			return Pending{}, fmt.Errorf("decide %s: %w", id, err)
		}
		if save {
			if err := a.saveLocked(); err != nil {
				return Pending{}, fmt.Errorf("decide %s: approved for this run, but saving failed: %w", id, err)
			}
		}
	}
	pr.approved = approve
	a.remove(pr)
	close(pr.done)
	a.notify()
	decision, reason := Deny, "denied by the operator"
	if approve {
		decision, reason = Allow, "approved by the operator"
	}
	p.audit.record(&Event{Class: "Network Activity", Activity: "approval", Decision: decision, Host: pr.Host, Port: pr.Port,
		Binary: pr.Binary, Rule: "approval " + id, Reason: reason})
	return pr.Pending, nil
}

// ErrNoSuchGrant is returned by Revoke for a host:port with no approval.
var ErrNoSuchGrant = errors.New("no approval for that host:port")

// Revoke withdraws the approval of host:port (id is "HOST:PORT", as
// ApprovalID writes it), saved or not: later requests to it are decided by
// the policy again (and queued for approval when approvals are on); a
// saved approval is also removed from the approvals file. Connections
// already admitted by the approval are not cut, as with a policy change.
func (p *Proxy) Revoke(id string) (Approval, error) {
	a := p.appr
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.grants, func(g Approval) bool { return ApprovalID(g) == id })
	if i < 0 {
		return Approval{}, fmt.Errorf("revoke %s: %w (list them with `nemoclaw policy approvals %s --list`)", id, ErrNoSuchGrant, p.cfg.Sandbox)
	}
	old := a.grants[i]
	grants := slices.Delete(slices.Clone(a.grants), i, i+1)
	// Built aside and swapped in one store: a request decided meanwhile
	// sees the old list or the new one, never a partial one.
	eps := make([]*endpoint, 0, len(grants))
	for j, g := range grants {
		ce, err := a.compileGrant(g, j)
		if err != nil {
			return Approval{}, fmt.Errorf("revoke %s: %w", id, err)
		}
		eps = append(eps, ce)
	}
	a.grants = grants
	a.eps.Store(&eps)
	if old.Saved {
		if err := a.saveLocked(); err != nil {
			return Approval{}, fmt.Errorf("revoke %s: revoked for this run, but the approvals file was not updated: %w", id, err)
		}
	}
	a.notify()
	p.audit.record(&Event{Class: "Network Activity", Activity: "approval", Decision: Deny, Host: old.Host, Port: old.Port,
		Rule: "approval " + id, Reason: "revoked by the operator"})
	return old, nil
}

// ApprovalID is the id an approval is listed and revoked by: its host:port.
func ApprovalID(ap Approval) string { return net2key(ap.Host, ap.Port) }

// compileGrant compiles an approval as the endpoint
// network_policies.approved.endpoints[index].
func (a *approvals) compileGrant(ap Approval, index int) (*endpoint, error) {
	ce, _, err := compileEndpoint("approval", &policy.Endpoint{Host: ap.Host, Port: ap.Port}, a.p)
	if err != nil {
		return nil, err
	}
	ce.setName("approved", index)
	return ce, nil
}

func (a *approvals) grantLocked(ap Approval) error {
	ce, err := a.compileGrant(ap, len(a.grants))
	if err != nil {
		return err
	}
	a.grants = append(a.grants, ap)
	eps := append(append([]*endpoint{}, a.granted()...), ce)
	a.eps.Store(&eps)
	return nil
}

func (a *approvals) saveLocked() error {
	f := a.p.cfg.ApprovalsFile
	if f == "" {
		return errors.New("this sandbox has no approvals file")
	}
	var saved []Approval
	for _, g := range a.grants {
		if g.Saved {
			saved = append(saved, g)
		}
	}
	b, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		return err
	}
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f)
}

// load reads saved approvals.
func (a *approvals) load() error {
	f := a.p.cfg.ApprovalsFile
	if f == "" {
		return nil
	}
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("approvals file: %w", err)
	}
	var saved []Approval
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("approvals file %s: %w", f, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range saved {
		s.Saved = true
		if err := a.grantLocked(s); err != nil {
			return fmt.Errorf("approvals file %s: %w", f, err)
		}
	}
	return nil
}

func (a *approvals) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, pr := range a.pending {
		a.remove(pr)
		close(pr.done)
	}
}
