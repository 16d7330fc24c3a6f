package raftnode

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Member is one node of the cluster as the replicated log knows it.
type Member struct {
	ID       uint64   `json:"id"`
	PeerURLs []string `json:"peer_urls"`
	// APIURL is the client API the node published through the log once it
	// started ("" until then).
	APIURL string `json:"api_url,omitempty"`
	// Learner members receive the log but count in no quorum.
	Learner bool `json:"learner,omitempty"`
}

// memberContext travels in a conf change's Context.
type memberContext struct {
	PeerURLs []string `json:"peer_urls"`
}

// contextFor encodes the conf-change context of a member with these peer
// URLs (marshalling a slice of strings cannot fail).
func contextFor(peerURLs ...string) []byte {
	b, _ := json.Marshal(memberContext{PeerURLs: peerURLs})
	return b
}

// membership is replicated state kept beside the queue state machine: it is
// changed only by applying conf changes and restored from snapshots, so
// every node agrees on it at every index.
type membership struct {
	members map[uint64]*Member
	removed map[uint64]bool // ids are never reused
}

func newMembership() *membership {
	return &membership{members: map[uint64]*Member{}, removed: map[uint64]bool{}}
}

// decodeMemberContext reads a conf change's context; an empty one (a
// promotion) holds no peer URLs.
func decodeMemberContext(b []byte) (memberContext, error) {
	var mc memberContext
	if len(b) == 0 {
		return mc, nil
	}
	if err := json.Unmarshal(b, &mc); err != nil {
		return mc, fmt.Errorf("%w: %w", errBadMemberContext, err)
	}
	return mc, nil
}

var errBadMemberContext = errors.New("raftnode: undecodable member context")

// add records a new member, or promotes a learner when a voter is added
// under an existing learner's id.
func (ms *membership) add(id uint64, mc memberContext, learner bool) {
	if m, ok := ms.members[id]; ok {
		m.Learner = m.Learner && learner
		return
	}
	ms.members[id] = &Member{ID: id, PeerURLs: mc.PeerURLs, Learner: learner}
}

// voters lists the ids of the voting members.
func (ms *membership) voters() []uint64 {
	var out []uint64
	for id, m := range ms.members {
		if !m.Learner {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// peerURLInUse reports whether a current member advertises u.
func (ms *membership) peerURLInUse(u string) bool {
	for _, m := range ms.members {
		for _, p := range m.PeerURLs {
			if p == u {
				return true
			}
		}
	}
	return false
}

func (ms *membership) remove(id uint64) {
	delete(ms.members, id)
	ms.removed[id] = true
}

// list returns the members sorted by id.
func (ms *membership) list() []Member {
	out := make([]Member, 0, len(ms.members))
	for _, m := range ms.members {
		c := *m
		c.PeerURLs = append([]string(nil), m.PeerURLs...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// membershipState is the snapshot form of membership, sorted so that equal
// states encode to equal bytes.
type membershipState struct {
	Members []Member `json:"members"`
	Removed []uint64 `json:"removed"`
}

func (ms *membership) state() membershipState {
	st := membershipState{Members: ms.list(), Removed: []uint64{}}
	for id := range ms.removed {
		st.Removed = append(st.Removed, id)
	}
	sort.Slice(st.Removed, func(i, j int) bool { return st.Removed[i] < st.Removed[j] })
	return st
}

// snapshotVersion starts the raft snapshot payload: version, length of the
// membership JSON, the JSON, then the state machine's own bytes.
const snapshotVersion = 1

var errBadSnapshot = errors.New("raftnode: malformed snapshot payload")

// joinSnapshot lays out the payload from encoded membership and state.
func joinSnapshot(js, smData []byte) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(js)+len(smData))
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(js)))
	b = append(b, js...)
	return append(b, smData...)
}

func decodeSnapshot(data []byte) (*membership, []byte, error) {
	if len(data) == 0 || data[0] != snapshotVersion {
		return nil, nil, fmt.Errorf("%w: bad version", errBadSnapshot)
	}
	n, k := binary.Uvarint(data[1:])
	if k <= 0 || n > uint64(len(data)-1-k) {
		return nil, nil, fmt.Errorf("%w: bad membership length", errBadSnapshot)
	}
	start := 1 + k
	var st membershipState
	if err := json.Unmarshal(data[start:start+int(n)], &st); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
	}
	ms := newMembership()
	for _, m := range st.Members {
		ms.members[m.ID] = &m
	}
	for _, id := range st.Removed {
		ms.removed[id] = true
	}
	return ms, data[start+int(n):], nil
}
