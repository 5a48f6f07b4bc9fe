package supervisor

import (
	"os"
	"sync"
)

// agentNotes copies the proxy's refused-model-call lines
// (egress.Config.OnModelRefusal) into a detached agent's log file, next
// to the agent's own "connection error", so that `nemoclaw sandbox logs`
// shows the cause where the symptom is. Lines are single writes to an
// O_APPEND file: they do not split the agent's own lines' bytes apart.
type agentNotes struct {
	mu sync.Mutex
	f  *os.File
}

// set starts copying into f (the agent's log).
func (n *agentNotes) set(f *os.File) {
	n.mu.Lock()
	n.f = f
	n.mu.Unlock()
}

// note writes one line, marked as nemoclaw's.
func (n *agentNotes) note(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.f != nil {
		_, _ = n.f.WriteString("[nemoclaw] " + line + "\n")
	}
}
