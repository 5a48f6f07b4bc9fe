package registry

import (
	"context"
	"sync"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// credStore is an in-memory credentials.Store for tests.
type credStore struct {
	mu sync.Mutex
	m  map[string]auth.Credential
}

func (s *credStore) Get(_ context.Context, addr string) (auth.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[addr], nil
}

func (s *credStore) Put(_ context.Context, addr string, c auth.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]auth.Credential{}
	}
	s.m[addr] = c
	return nil
}

func (s *credStore) Delete(_ context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, addr)
	return nil
}
