//go:build !unix

package cli

// notifyResize: without SIGWINCH the size is read again on every frame only.
func notifyResize() (<-chan struct{}, func()) { return nil, func() {} }
