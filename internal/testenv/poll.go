package testenv

import (
	"context"
	"time"
)

// Poll calls cond every interval until it reports true, returns an error, or ctx ends.
// Tests use it instead of sleeping.
func Poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}
