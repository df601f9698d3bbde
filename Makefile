# Every target goes through ./dev, which installs what is missing first.
.PHONY: run test check bench install

run:
	./dev up

test:
	./dev test

check:
	./dev check

bench:
	./dev bench

install:
	./dev install
