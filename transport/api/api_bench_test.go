package api

import (
	stdjson "encoding/json"
	"testing"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/storage"
)

// Benchmarks of the JSON codec on the user paths.

var benchUser = &storage.User{
	ID: storage.MakeUserID(storage.StampAt(1_700_000_000_000), 17), Name: "Ada Lovelace",
	Email: "ada.lovelace@example.com", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5",
	Role: storage.RoleUser, Version: 3, CreatedMs: 1_700_000_000_000, UpdatedMs: 1_700_000_123_456,
}

func BenchmarkEncodeUserJSON(b *testing.B) {
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(toUserJSON(benchUser)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stdjson.Marshal(toUserJSON(benchUser)); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The share of toUserJSON itself (two RFC 3339 times).
	b.Run("toUserJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = toUserJSON(benchUser)
		}
	})
}

var benchCreateBody = []byte(`{"name":"Ada Lovelace","email":"ada.lovelace@example.com","password":"correct horse battery","role":"user"}`)

func BenchmarkDecodeCreateRequest(b *testing.B) {
	b.Run("decodeJSON", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchCreateBody)))
		for b.Loop() {
			var req createUserRequest
			if e := decodeJSON(benchCreateBody, &req); e != nil {
				b.Fatal(e)
			}
		}
	})
	// Reference point: a plain goccy Unmarshal, without decodeJSON's
	// strictness checks (unknown fields, trailing data).
	b.Run("goccyUnmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchCreateBody)))
		for b.Loop() {
			var req createUserRequest
			if err := json.Unmarshal(benchCreateBody, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
